"""Networks: plain nn.Modules built by small functions; no training logic lives here."""
