"""PKCS#11 custody of keybroker's keys: module loading, sessions, KEK, import, release."""
