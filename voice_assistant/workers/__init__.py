"""Several server processes behind one port (`serve --workers N`): the supervisor and its proxy."""
