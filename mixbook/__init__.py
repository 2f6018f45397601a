"""mixbook: mixup and its descendants as one operation, a row-stochastic mixing matrix."""
