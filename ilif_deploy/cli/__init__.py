"""Command-line tools: ilif-export, ilif-energy, ilif-simulate."""
