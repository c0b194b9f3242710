"""The JAX backend (JAX + Flax NNX + Optax): everything that imports jax, flax or optax lives here."""
