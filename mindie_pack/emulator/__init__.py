"""A MindIE-compatible stand-in for mindieservice_daemon, for machines without NPUs (depends on runtime/)."""
