"""Licensing: driver's licences recorded on the My Number card, and vehicle registration by card."""
