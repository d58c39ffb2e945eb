package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/content"
	cerrdefs "github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/images"
	"github.com/containerd/containerd/leases"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-project/ferry/internal/errdefs"
	"github.com/ferry-project/ferry/transport/wire"
)

func toWire(d ocispec.Descriptor) wire.Descriptor {
	return wire.Descriptor{MediaType: d.MediaType, Digest: d.Digest.String(), Size: d.Size}
}

// FromWire converts and validates a descriptor received from the other side.
func FromWire(d wire.Descriptor) (ocispec.Descriptor, error) {
	dg, err := digest.Parse(d.Digest)
	if err != nil || d.Size < 0 || d.MediaType == "" {
		return ocispec.Descriptor{}, fmt.Errorf("descriptor %+v: %w", d, errdefs.ErrInvalid)
	}
	return ocispec.Descriptor{MediaType: d.MediaType, Digest: dg, Size: d.Size}, nil
}

// ImageBlobs returns an image's target descriptor and every blob it needs on this host's
// platform: the index, this platform's manifest, its config and its layers.
func (c *Client) ImageBlobs(ctx context.Context, name string) (wire.Descriptor, []wire.Descriptor, error) {
	ctx = c.with(ctx)
	img, err := c.c.ImageService().Get(ctx, name)
	if err != nil {
		return wire.Descriptor{}, nil, classify(err, "image "+name)
	}
	cs := c.c.ContentStore()
	var blobs []wire.Descriptor
	collect := images.HandlerFunc(func(_ context.Context, d ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		blobs = append(blobs, toWire(d))
		return nil, nil
	})
	children := images.LimitManifests(images.FilterPlatforms(images.ChildrenHandler(cs), platforms.Default()), platforms.Default(), 1)
	if err := images.Walk(ctx, images.Handlers(collect, children), img.Target); err != nil {
		return wire.Descriptor{}, nil, fmt.Errorf("walk image %s: %w", name, err)
	}
	return toWire(img.Target), blobs, nil
}

// OpenBlob reads a blob from this host's content store.
func (c *Client) OpenBlob(ctx context.Context, d wire.Descriptor) (io.ReadCloser, error) {
	desc, err := FromWire(d)
	if err != nil {
		return nil, err
	}
	ra, err := c.c.ContentStore().ReaderAt(c.with(ctx), desc)
	if err != nil {
		return nil, classify(err, "blob "+d.Digest)
	}
	return struct {
		io.Reader
		io.Closer
	}{content.NewReader(ra), ra}, nil
}

// MissingBlobs returns the digests of the blobs this host's content store lacks.
func (c *Client) MissingBlobs(ctx context.Context, blobs []wire.Descriptor) ([]string, error) {
	ctx = c.with(ctx)
	var missing []string
	for _, b := range blobs {
		d, err := FromWire(b)
		if err != nil {
			return nil, err
		}
		if _, err := c.c.ContentStore().Info(ctx, d.Digest); err != nil {
			if !cerrdefs.IsNotFound(err) {
				return nil, err
			}
			missing = append(missing, b.Digest)
		}
	}
	return missing, nil
}

// WithLease protects content written under the returned context from garbage collection until
// release is called (by then the image record references it).
func (c *Client) WithLease(ctx context.Context) (context.Context, func(context.Context) error, error) {
	return c.c.WithLease(c.with(ctx), leases.WithExpiration(time.Hour))
}

// WriteBlob stores a blob, checking its size and digest.
func (c *Client) WriteBlob(ctx context.Context, d wire.Descriptor, r io.Reader) error {
	desc, err := FromWire(d)
	if err != nil {
		return err
	}
	err = content.WriteBlob(ctx, c.c.ContentStore(), "ferry-"+desc.Digest.Encoded(), r, desc)
	if err != nil && !cerrdefs.IsAlreadyExists(err) {
		return fmt.Errorf("store blob %s (checked against its digest): %w", d.Digest, errors.Join(err, errdefs.ErrProtocol))
	}
	return nil
}

// CreateImage records an image whose blobs are in the content store and unpacks it.
func (c *Client) CreateImage(ctx context.Context, name string, target wire.Descriptor, snapshotter string) error {
	desc, err := FromWire(target)
	if err != nil {
		return err
	}
	// Label each parent blob with its children, as a pull does: containerd's garbage collector
	// follows those labels, so without them the config and layers would be collected once the
	// lease is gone (only the image's target is referenced by the record).
	cs := c.c.ContentStore()
	if err := images.Walk(c.with(ctx), images.SetChildrenLabels(cs, images.ChildrenHandler(cs)), desc); err != nil {
		return fmt.Errorf("label the content of image %s: %w", name, err)
	}
	img, err := c.c.ImageService().Create(c.with(ctx), images.Image{Name: name, Target: desc})
	if err != nil {
		return classify(err, "create image "+name)
	}
	if err := containerd.NewImage(c.c, img).Unpack(c.with(ctx), snapshotter); err != nil {
		return fmt.Errorf("unpack image %s: %w", name, err)
	}
	return nil
}

// ImageInUse says whether a container of the namespace was created from image name.
func (c *Client) ImageInUse(ctx context.Context, name string) (bool, error) {
	cs, err := c.c.ContainerService().List(c.with(ctx), fmt.Sprintf("image==%q", name))
	if err != nil {
		return false, classify(err, "list the containers of image "+name)
	}
	return len(cs) > 0, nil
}

// ImageCreatedAt is when the image record was created (errdefs.ErrNotFound if there is none).
func (c *Client) ImageCreatedAt(ctx context.Context, name string) (time.Time, error) {
	img, err := c.c.ImageService().Get(c.with(ctx), name)
	if err != nil {
		return time.Time{}, classify(err, "image "+name)
	}
	return img.CreatedAt, nil
}

// DeleteImage removes an image record and, through a synchronous garbage collection, its
// content and snapshots (a missing image is not an error).
func (c *Client) DeleteImage(ctx context.Context, name string) error {
	err := c.c.ImageService().Delete(c.with(ctx), name, images.SynchronousDelete())
	if err != nil && !cerrdefs.IsNotFound(err) {
		return classify(err, "delete image "+name)
	}
	return nil
}
