"""One package per far side (Asterisk, GSM, fax, USB, audio)."""
