"""The technician's CLI (detect, enroll, configure, line-test). Built by a later issue."""
