"""magicoin node package."""
