"""Change consumers (pillows, as CommCare calls them): each follows the
``_changes`` feed of the database its app reads from, keeps its checkpoint in
Django's database, and processes every change at least once into a sink.

After a doc type migration's flip, ``move_pillow_checkpoint`` moves a
stopped pillow from the migration's source to its target by the seq pairs
the migration recorded, instead of a rebuild (see move.py)."""
