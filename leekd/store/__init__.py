"""How records reach the database: group commit, recovery, maintenance, reads."""
