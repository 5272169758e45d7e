"""Models this project trained itself, shipped inside the package (see README.md here)."""
