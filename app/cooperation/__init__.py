"""Cooperation areas: named groups of jurisdictions (either era), border-segment strips and
drawn polygons whose units work together (issue 17)."""
