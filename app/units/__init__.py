"""Units (police, border guard, coast guard, customs) at the four levels of the hotline network."""
