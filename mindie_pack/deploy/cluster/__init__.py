"""Multi-node deployments: several servers driven over SSH from one machine."""
