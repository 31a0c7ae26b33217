"""magicoin genesis package."""
