"""Printable reports: the briefing (GET /reports/briefing, `borderwatch report briefing`)."""
