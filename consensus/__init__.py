"""magicoin consensus package."""
