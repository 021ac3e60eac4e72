"""The SQL shipped with langfeat: ``langfeat.sql.db`` is ``db/`` and ``langfeat.sql.queries`` is ``queries/``."""
