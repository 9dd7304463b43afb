"""Policies per domain as versioned data (issue #16), the operators' side: validation
with the services' own parsers, versions and their history, the diff in words, and the
PolicyService the router hosts (``servicer``), writing to the compacted ``policies`` topic."""
