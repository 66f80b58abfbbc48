"""pipedrive."""
