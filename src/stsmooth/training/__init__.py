"""Running: typed config and recipes, checkpoints, the training loop and its parts.

``train.train_step`` is the one plain step (student forward, teacher forward without
gradients, loss, optimiser step, teacher update); ``train.run`` is the loop around it.
"""
