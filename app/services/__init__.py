"""Services: the service layer between the HTTP routes and the repository."""
