"""Native package verification: the dpkg database, its logs, and what they explain."""
