"""The PostgreSQL store: connections (qmark statements on psycopg 3) and versioned schema."""
