"""The ground floor: errors, atomic file I/O, the PNG encoder, reading user images. Imports nothing of Zoetrope."""
