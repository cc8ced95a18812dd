"""A small camera-only 3D object detector (CenterNet-style, any rig): the yardstick that measures how well
generated frames follow their boxes, and the model that generated data should help train (docs/perception.md)."""
