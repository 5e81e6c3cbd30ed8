"""The admin console: server-rendered pages under /admin (README "Admin console")."""
