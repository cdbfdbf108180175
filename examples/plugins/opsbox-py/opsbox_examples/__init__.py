"""The Opsbox example plugins (input, assistant, output), written for pluggy."""

__version__ = "0.1.0"
