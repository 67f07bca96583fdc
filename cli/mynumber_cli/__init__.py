"""Command line tools of the My Number event platform."""
