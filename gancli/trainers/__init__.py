"""Training recipes: one file per family, each a Trainer driven by gancli.engine."""
