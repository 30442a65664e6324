"""Repairing a BadNet without its clean validation data: probe it, quarantine its targets."""
