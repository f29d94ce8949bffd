"""Services inside the server process: the work notifier and the recovery sweep."""
