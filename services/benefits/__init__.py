"""Benefits: the public-fund receiving account, payout batches and their payment through the bank gateway."""
