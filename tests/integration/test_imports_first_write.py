"""`loyalty import` writes a chunk whose rows can all go in without reading first, and the
unique keys catch the rows there already: the outcome is the same as reading first."""

from __future__ import annotations

from sqlalchemy import text

from tests.integration.test_imports import balances_file, counts, members_file, table_counts, write
from worker.services import imports
from worker.services.audit import audit_all
from worker.store import imports as store_imports


async def test_a_new_member_with_an_identity_taken_before_is_a_conflict_and_the_others_go_in(db, tmp_path):
    await members_file(db, write(tmp_path, "first.csv", "member_id,phone\nA1,+8613800000001\n"))
    before = await table_counts(db)
    second = write(tmp_path, "second.csv", "member_id,phone\nB1,+8613800000002\nB2,+8613800000001\nB3,\n")

    report, problems = await members_file(db, second)

    assert (counts(report), problems) == ((3, 2, 0, 1, 0), ["line 3: conflict: phone: already names member A1"])
    after = await table_counts(db)
    assert (after["members"], after["member_identities"], after["import_members"]) == (
        before["members"] + 2,
        before["member_identities"] + 1,
        before["import_members"] + 2,
    )


async def test_lots_imported_before_among_new_ones_are_unchanged_and_the_new_ones_go_in(db, tmp_path):
    await members_file(db, write(tmp_path, "members.csv", "member_id\nM1\nM2\n"))
    await balances_file(db, write(tmp_path, "first.csv", "member_id,lot_ref,points,expires_on\nM1,a,100,2027-12-31\n"))
    second = write(
        tmp_path,
        "second.csv",
        "member_id,lot_ref,points,expires_on\nM1,a,100,2027-12-31\nM1,b,40,2027-12-31\nM2,c,7,2027-12-31\n",
    )

    report, problems = await balances_file(db, second)

    assert (counts(report), report.points, problems) == ((3, 2, 1, 0, 0), 47, [])
    async with db.connect() as conn:
        available = (
            await conn.execute(text("SELECT member_id, available_points FROM members ORDER BY member_id"))
        ).all()
    assert [tuple(r) for r in available] == [("M1", 140), ("M2", 7)]
    assert (await audit_all(db)).clean


async def test_a_file_imported_first_is_not_read_and_one_run_again_is(db, tmp_path, monkeypatch):
    monkeypatch.setattr(imports, "CHUNK_ROWS", 2)
    reads = []
    real = store_imports.known_members

    async def counted(conn, member_ids):
        reads.append(len(member_ids))
        return await real(conn, member_ids)

    monkeypatch.setattr(store_imports, "known_members", counted)
    first = write(tmp_path, "first.csv", "member_id\n" + "".join(f"R{i}\n" for i in range(1, 4)))
    again = write(tmp_path, "again.csv", "member_id\n" + "".join(f"R{i}\n" for i in range(1, 7)))

    report, _ = await members_file(db, first)
    assert (counts(report), len(reads)) == ((3, 3, 0, 0, 0), 0)

    report, _ = await members_file(db, again)

    # R1-R2 and R3-R4 hold members imported before; R5-R6, after a chunk that held some, is read too.
    assert (counts(report), len(reads)) == ((6, 3, 3, 0, 0), 3)
    assert (await audit_all(db)).clean


async def test_a_dry_run_of_a_file_imported_before_finds_its_rows_unchanged_and_writes_nothing(db, tmp_path):
    members = write(tmp_path, "members.csv", "member_id,phone\nA1,+8613800000001\nA2,\n")
    lots = write(tmp_path, "lots.csv", "member_id,lot_ref,points,expires_on\nA1,a,10,2027-12-31\n")
    await members_file(db, members)
    await balances_file(db, lots)
    before = await table_counts(db)
    more = write(tmp_path, "more.csv", "member_id,lot_ref,points,expires_on\nA1,a,10,2027-12-31\nA2,b,5,2027-12-31\n")

    # The first write of each fails on a unique key inside the dry run's transaction.
    dry_members, member_problems = await members_file(db, members, dry_run=True)
    dry_lots, lot_problems = await balances_file(db, more, dry_run=True)

    assert (counts(dry_members), member_problems) == ((2, 0, 2, 0, 0), [])
    assert (counts(dry_lots), dry_lots.points, lot_problems) == ((2, 1, 1, 0, 0), 5, [])
    assert await table_counts(db) == before
