"""The layer both tiers stand on: settings, database, tables, repositories, storage, jobs, logging."""
