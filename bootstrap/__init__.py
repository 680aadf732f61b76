"""The bootstrap project (bootstrap/Pulumi.yaml): deploy and preview identities, state backend and
secrets provider for the main stacks. docs/first-rollout.md runs it."""
