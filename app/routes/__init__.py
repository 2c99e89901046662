"""HTTP routes: thin wrappers that validate, call a service and map its errors."""
