"""The central service: fleet dashboard, municipal disaster switch, users, roles, sessions and audit."""
