/* Lists of open file and directory handles.
 *
 * The kernel sends no RELEASE/RELEASEDIR for handles still open when the
 * connection goes away (SIGTERM, umount -l, abort), so every handle is
 * linked here and whatever remains is closed when the server exits.
 */
#ifndef PT_HANDLES_H
#define PT_HANDLES_H

#include <pthread.h>
#include <stddef.h>

#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))

struct handle {
	struct handle *prev;
	struct handle *next;
};

struct handle_list {
	pthread_mutex_t lock;
	struct handle head;
};

void handle_list_init(struct handle_list *l);
void handle_list_destroy(struct handle_list *l);
void handle_add(struct handle_list *l, struct handle *h);
void handle_del(struct handle_list *l, struct handle *h);
/* Unlinks and returns some handle, NULL when the list is empty. */
struct handle *handle_pop(struct handle_list *l);

#endif
