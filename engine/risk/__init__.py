"""Pre-trade risk: pure rules and the evaluator that runs all of them."""
