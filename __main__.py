"""event-backbone: the per-environment platform. All composition lives in components/program.py."""

from components.program import main

main()
