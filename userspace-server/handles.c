/* Handle lists (see handles.h). */
#include "handles.h"

void handle_list_init(struct handle_list *l)
{
	pthread_mutex_init(&l->lock, NULL);
	l->head.prev = l->head.next = &l->head;
}

void handle_list_destroy(struct handle_list *l)
{
	pthread_mutex_destroy(&l->lock);
}

void handle_add(struct handle_list *l, struct handle *h)
{
	pthread_mutex_lock(&l->lock);
	h->next = l->head.next;
	h->prev = &l->head;
	l->head.next->prev = h;
	l->head.next = h;
	pthread_mutex_unlock(&l->lock);
}

static void unlink_locked(struct handle *h)
{
	h->prev->next = h->next;
	h->next->prev = h->prev;
	h->prev = h->next = h;
}

void handle_del(struct handle_list *l, struct handle *h)
{
	pthread_mutex_lock(&l->lock);
	unlink_locked(h);
	pthread_mutex_unlock(&l->lock);
}

struct handle *handle_pop(struct handle_list *l)
{
	struct handle *h = NULL;

	pthread_mutex_lock(&l->lock);
	if (l->head.next != &l->head) {
		h = l->head.next;
		unlink_locked(h);
	}
	pthread_mutex_unlock(&l->lock);
	return h;
}
