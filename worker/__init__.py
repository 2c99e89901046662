"""synthaudit: worker package."""
