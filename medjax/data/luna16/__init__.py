"""Raw LUNA16 CT volumes (.mhd/.raw) to labelled axial patches, split by scan or by candidate.

Layout (see DESIGN.md): `subset0..subset9/<seriesuid>.mhd|.raw`, `candidates.csv` (V1) or
`candidates_V2.csv` (seriesuid,coordX,coordY,coordZ,class), `annotations.csv`
(seriesuid,coordX,coordY,coordZ,diameter_mm). Coordinates are world millimetres (x, y, z);
volumes are arrays [z, y, x].

Pipeline (`build.prepare`): CSV (`tables`) -> split (by scan: fold k tests on subset k; or the
paper's leaky random split by candidate) -> seeded negative subsampling per split -> one read per
volume (`mhd`), all its candidates cut in that pass (`patches`), scans in parallel processes
(`pool`) -> HU window -> uint8 patches [N, size, size, slices] -> optional augmented copies of
the training positives. Every patch keeps its seriesuid, world coordinates and candidate row
(`Split.meta`) for FROC scoring. The result can be saved as an .npz (`npz`) that loads with
numpy alone: `python -m medjax.data.luna16 LUNA16_DIR OUT.npz --fold K`.
"""

from medjax.data.luna16.build import (CANDIDATE_FILES, SPLIT_MODES, Options, assign_splits,
                                      extract, find_scans, is_raw_layout, prepare,
                                      subsample_negatives)
from medjax.data.luna16.mhd import read_metaimage, read_volume, write_metaimage
from medjax.data.luna16.npz import load_splits, save_splits
from medjax.data.luna16.patches import HU_WINDOW, Geometry, cut_patches, dihedral, window_hu
from medjax.data.luna16.tables import (ANNOTATION_COLUMNS, CANDIDATE_COLUMNS, Table,
                                       read_annotations, read_candidates, read_csv,
                                       read_seriesuids, read_table)
