"""Pure codecs: records to bytes and back."""
