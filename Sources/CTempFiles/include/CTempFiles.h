#ifndef MOE_CTEMPFILES_H
#define MOE_CTEMPFILES_H

/// Paths of temporary files and staging folders this process has not yet published. A SIGINT, SIGTERM or
/// SIGHUP removes them and then ends the process as the signal would have, so an interrupted write leaves
/// nothing behind. Paths are kept in fixed C buffers because a signal handler may not allocate.

/// Registers a path; returns its slot, or -1 when the path is too long or every slot is taken.
/// `is_folder` != 0: the path is a flat staging folder whose files are removed before the folder.
/// Installs the signal handlers on first use (signals the process ignores stay ignored).
int moe_temp_register(const char *path, int is_folder);

/// Forgets a slot (after the path was published or removed).
void moe_temp_unregister(int slot);

/// rename(2) that fails with EEXIST instead of replacing `to`; errno EINVAL or ENOSYS where the file
/// system or kernel cannot do it (the caller falls back to link(2)).
int moe_rename_noreplace(const char *from, const char *to);

#endif
