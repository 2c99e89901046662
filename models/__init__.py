"""synthaudit: models package."""
