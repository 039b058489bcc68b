"""Deploy stage: start mindieservice_daemon (host or container), wait until it serves, status, logs, stop."""
