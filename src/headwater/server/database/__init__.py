"""The server's database: tables (orm), connection (engine), schema migrations (migrate)."""
