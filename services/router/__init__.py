"""The router: skills-based routing of contacts to agents."""
