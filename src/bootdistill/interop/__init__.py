"""Interoperability: exporting bootdistill models to other libraries' formats (Hugging Face transformers)."""
