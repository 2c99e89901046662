"""synthaudit: app package."""
