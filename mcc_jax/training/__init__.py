"""Training: the generator/discriminator losses of one official iteration, optimizers and the train state."""
