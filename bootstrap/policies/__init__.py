"""The bootstrap's policy pack (python -m dryrun.bootstrap runs it; rules.py holds the policies)."""
